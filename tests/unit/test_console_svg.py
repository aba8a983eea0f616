"""The console's SVG graph: layers follow dependencies, wide layers wrap, nodes carry status."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from celery import chain, chord, group

from canvasflow.config.celery_app import app
from canvasflow.workers.demo import add, xsum
from canvasflow.workflows.console.svg import NODE_H, PER_ROW, layers, render
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.views.pictures import STATUS_COLORS

NS = {"s": "http://www.w3.org/2000/svg"}


def test_layers_follow_the_longest_path():
    graph = compile_canvas(chain(add.s(1, 1), chord([add.s(1), chain(add.s(2), add.s(3))], xsum.s())), app)
    assert layers(graph) == [["0.add"], ["1.h0.add", "1.h1.0.add"], ["1.h1.1.add"], ["1.b.xsum"]]


def test_nodes_carry_status_class_fill_and_escaped_labels():
    graph = compile_canvas(chain(add.s(1, 1), add.s(2)), app)
    svg = render(graph, {"0.add": "compensated", "1.add": "failed"}, {"1.add": "<b>note</b>"})
    root = ET.fromstring(svg)  # well-formed XML: labels are escaped
    nodes = {g.get("data-step"): g for g in root.iterfind(".//s:g", NS)}
    assert nodes["0.add"].get("class") == "node status-compensated"
    assert nodes["0.add"].find("s:rect", NS).get("fill") == STATUS_COLORS["compensated"]
    assert nodes["1.add"].get("data-status") == "failed"
    assert "<b>note</b>" in "".join(nodes["1.add"].itertext())
    assert len(root.findall(".//s:path[@class='edge']", NS)) == 1


def test_a_wide_group_wraps_onto_rows():
    graph = compile_canvas(group(add.s(i, 1) for i in range(20)), app)
    svg = render(graph, {})
    ys = {float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)"', svg)}
    assert len(ys) == -(-20 // PER_ROW)  # 3 rows of at most PER_ROW
    assert max(ys) - min(ys) >= 2 * NODE_H
    assert svg.count('class="node status-pending"') == 20
