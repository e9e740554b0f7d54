"""Generated markdown reports: pure functions from analyses to text and chart bytes.

`build.generate()` returns every report in memory; `writer` writes them atomically or checks
them; `archcalc report` (report_cli.py) is the command. matplotlib is imported only to draw,
torch only by `archcalc report --crosscheck`.
"""
