#!/usr/bin/env python3
"""Writes the XLSX registry fixtures next to this file (needs openpyxl: pip install openpyxl).
The files are committed; run this again only to change them."""
import os
from openpyxl import Workbook

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = ["类型", "名称", "IP地址", "MAC地址", "使用者", "使用地点", "机房", "网址"]
ROWS = [
    ["设备", "机房服务器", "10.1.0.10", "02:6b:68:01:00:0a", "王工", "信息机房", "是", None],
    ["设备", 101, "10.1.0.21", "02-6B-68-01-00-15", "张三", "办公室", "否", None],  # a numeric name, as Excel keeps it
    ["门户网站", "司法局门户网站", None, None, None, None, None, "https://www.example/"],
]


def write(name, rows):
    wb = Workbook()
    ws = wb.active
    ws.title = "备案"
    ws.append(HEADER)
    for r in rows:
        ws.append(r)
    wb.save(os.path.join(HERE, name))


write("registry.xlsx", ROWS)
write("registry-bad.xlsx", ROWS + [["设备", "来历不明", "10.1.0.300", None, None, None, "否", None]])
