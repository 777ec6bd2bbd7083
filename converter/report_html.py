"""The verification report: one self-contained HTML page with inline SVG pictures (no matplotlib, no JavaScript,
no external files), made from the summary that ``converter.verify`` writes into the manifest."""
from __future__ import annotations

import math
from html import escape
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

PLOT_WIDTH, PLOT_HEIGHT = 420, 140  # drawing area of a picture, px
LEFT, TOP, BOTTOM = 56, 28, 44  # margins for the axis labels and the title, px
BAR_COLOUR, AXIS_COLOUR = "#3b6ea5", "#444"
LAYER_REFERENCE = "fp32"  # converter.verify measures per-layer errors against the fp32 ONNX graph
# 1 - cosine below this is the float64 rounding of the cosine itself: drawn at this floor
COSINE_LOSS_FLOOR = 1e-15


def _svg(body: List[str], title: str) -> str:
    width, height = LEFT + PLOT_WIDTH + 16, TOP + PLOT_HEIGHT + BOTTOM
    head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="sans-serif" font-size="11">' % (width, height, width, height))
    axes = ('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>'
            % (LEFT, TOP, LEFT, TOP + PLOT_HEIGHT, AXIS_COLOUR,
               LEFT, TOP + PLOT_HEIGHT, LEFT + PLOT_WIDTH, TOP + PLOT_HEIGHT, AXIS_COLOUR))
    caption = '<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>' % (LEFT, escape(title))
    return "\n".join([head, caption, axes] + body + ["</svg>"])


def _text(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return '<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>' % (x, y, anchor, escape(text))


def _edge_labels(low: float, high: float) -> Tuple[str, str]:
    """`low` and `high` with as many significant digits as it takes to tell them apart (up to 17)."""
    for digits in range(7, 18):
        labels = "%.*g" % (digits, low), "%.*g" % (digits, high)
        if labels[0] != labels[1]:
            return labels
    return labels


def histogram_svg(values: Sequence[float], bins: int, title: str, axis: str = "cosine",
                  log_floor: Optional[float] = None) -> str:
    """Counts of `values` in `bins` bins: equal bins between their min and max (edge labels with the digits it
    takes to tell them apart), or with `log_floor` equal bins in log10 from the decade below the smallest value
    (at least `log_floor`; smaller values, zero and below included, count at the floor) to the decade above the
    largest, with a label per decade."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return _svg([_text(LEFT + PLOT_WIDTH / 2, TOP + PLOT_HEIGHT / 2, "no values")], title)
    if log_floor is None:
        low, high = float(values.min()), float(values.max())
        counts, _ = np.histogram(values, bins=bins, range=(low, high if high > low else low + 1e-12))
        low_label, high_label = _edge_labels(low, high)
        ticks = [(0.0, low_label, "start"), (1.0, high_label, "end")]
        caption = "%s (%d values, %d bins)" % (axis, values.size, bins)
    else:
        logs = np.log10(np.maximum(values, log_floor))
        first, last = math.floor(float(logs.min())), math.ceil(float(logs.max()))
        step = max(1, math.ceil((last - first) / 8))  # at most 9 decade labels, the last one at the right end
        last = first + step * max(1, math.ceil((last - first) / step))
        counts, _ = np.histogram(logs, bins=bins, range=(first, last))
        ticks = [((decade - first) / (last - first), "1e%d" % decade, "middle")
                 for decade in range(first, last + 1, step)]
        caption = "%s, log scale (%d values, %d bins; %d at or below %g)" % (
            axis, values.size, bins, int((values <= log_floor).sum()), log_floor)
    tallest = max(int(counts.max()), 1)
    width = PLOT_WIDTH / bins
    body = ['<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
            % (LEFT + i * width + 0.5, TOP + PLOT_HEIGHT - count / tallest * PLOT_HEIGHT, max(width - 1, 0.5),
               count / tallest * PLOT_HEIGHT, BAR_COLOUR) for i, count in enumerate(counts) if count]
    body += [_text(LEFT + at * PLOT_WIDTH, TOP + PLOT_HEIGHT + 14, label, anchor) for at, label, anchor in ticks]
    body += [_text(LEFT + PLOT_WIDTH / 2, TOP + PLOT_HEIGHT + 32, caption),
             _text(LEFT - 4, TOP + 4, str(tallest), "end"), _text(LEFT - 4, TOP + PLOT_HEIGHT, "0", "end")]
    return _svg(body, title)


def bars_svg(labels: Sequence[str], values: Sequence[Optional[float]], title: str) -> str:
    """One bar per label, linear scale from 0, the value written above each bar (None: no bar, "n/a")."""
    known = [v for v in values if v is not None]
    tallest = max(known) if known and max(known) > 0 else 1.0
    step = PLOT_WIDTH / max(len(labels), 1)
    body = []
    for index, (label, value) in enumerate(zip(labels, values)):
        centre = LEFT + (index + 0.5) * step
        height = 0.0 if value is None else max(value, 0.0) / tallest * PLOT_HEIGHT
        if height:
            body.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                        % (centre - step * 0.35, TOP + PLOT_HEIGHT - height, step * 0.7, height, BAR_COLOUR))
        body.append(_text(centre, TOP + PLOT_HEIGHT - height - 3, "n/a" if value is None else "%.3g" % value))
        body.append(_text(centre, TOP + PLOT_HEIGHT + 14, label))
    body.append(_text(LEFT - 4, TOP + 4, "%.3g" % (tallest if known else 0), "end"))
    body.append(_text(LEFT - 4, TOP + PLOT_HEIGHT, "0", "end"))
    return _svg(body, title)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join("<th>%s</th>" % escape(str(h)) for h in headers)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % escape(_cell(c)) for c in row) for row in rows)
    return "<table><tr>%s</tr>%s</table>" % (head, body)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "%.7f" % value if 0.9 <= value <= 1.0 else "%.3g" % value
    return "" if value is None else str(value)


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}th{background:#eee}"
         "figure{display:inline-block;margin:0.5em}")


def verification_page(summary: Dict[str, Any], chain_cosines: Dict[str, np.ndarray], bins: int = 40) -> str:
    """The report of one `minicpmv-convert verify` run: figures, cosine histograms, per-layer error bars."""
    precisions = summary["precisions"]
    images = summary["images"]
    title = "MiniCPM-V %s bundle for %s" % (summary["model_version"], summary["target"])
    parts = ["<h1>Verification: %s</h1>" % escape(title),
             "<p>MiniCPM-V %s; reference: %s, checkpoint %s (weights sha256 %s).<br>%s held-out images (%s, data "
             "sha256 %s), %s slices in %s batches; ONNX Runtime %s, CPU provider.</p>"
             % tuple(escape(str(v)) for v in (
                 summary["model_version"], summary["reference"], summary["checkpoint"], summary["weights_sha256"],
                 images["count"], images["source"], images["data_sha256"], images["slices"], images["batches"],
                 summary["onnxruntime"]))]
    rows = [[p, module, f["vectors"], f["mean"], f["min"], f["p1"], f["relative_error"]]
            for p, entry in precisions.items() for module, f in ((m, entry[m]) for m in ("vpm", "resampler", "chain"))]
    parts += ["<h2>Cosine and relative error against torch float32</h2>",
              "<p>vpm: ONNX VPM vs torch VPM per patch vector (valid patches); resampler: ONNX Resampler fed the "
              "torch VPM output, per token; chain: ONNX VPM then ONNX Resampler, per token. Relative error = max "
              "abs error / max abs reference.</p>",
              table_html(["precision", "module", "vectors", "cosine mean", "cosine min", "cosine p1",
                          "relative error"], rows)]
    timing = [[p, e["timing"]["vpm_ms_per_batch"], e["timing"]["resampler_ms_per_batch"],
               e["timing"]["chain_ms_per_batch"]] for p, e in precisions.items()]
    parts += ["<h2>ONNX Runtime CPU time (ms per batch, after one warm-up run)</h2>",
              table_html(["precision", "VPM", "Resampler", "chain"], timing)]
    parts += ["<h2>Token cosines of the chain</h2>",
              "<p>Each picture counts the chain's tokens by 1 - cosine against torch float32, on a log scale: the "
              "further left, the closer to the reference. Values at or below %g (the float64 rounding of the cosine "
              "itself) are drawn at %g.</p>" % (COSINE_LOSS_FLOOR, COSINE_LOSS_FLOOR)]
    parts += ["<figure>%s</figure>" % histogram_svg(1.0 - np.asarray(chain_cosines[p], dtype=np.float64), bins,
                                                    "%s chain: token cosine, as 1 - cosine" % p, "1 - cosine",
                                                    COSINE_LOSS_FLOOR) for p in precisions]
    parts.append("<h2>Per-layer relative error on the worst slice (vs the %s ONNX graph)</h2>" % LAYER_REFERENCE)
    for p, entry in precisions.items():
        worst = entry["worst_slice"]
        if p == LAYER_REFERENCE:
            parts.append("<p>%s: no chart, as the %s ONNX graph is the reference of these errors (it would be "
                         "compared with itself). Its own relative error against torch float32 is in the first "
                         "table: %.3g on the VPM output (row %s vpm).</p>"
                         % (p, p, entry["vpm"]["relative_error"], p))
            continue
        layers = worst["layers"]
        parts.append("<figure>%s<figcaption>slice %d (image %d, %dx%d patches), chain cosine min %.6f</figcaption>"
                     "</figure>" % (bars_svg(["L%d" % layer["layer"] for layer in layers],
                                             [layer["relative_error"] for layer in layers],
                                             "%s: VPM layer output relative error" % p),
                                    worst["slice"], worst["image"], worst["rows"], worst["cols"], worst["min"]))
    slice_rows = []
    for index, first in enumerate(next(iter(precisions.values()))["chain"]["slices"]):
        row = [first["slice"], first["image"], "%dx%d" % (first["rows"], first["cols"])]
        for entry in precisions.values():
            row += [entry["chain"]["slices"][index]["mean"], entry["chain"]["slices"][index]["min"]]
        slice_rows.append(row)
    headers = ["slice", "image", "rows x cols"] + ["%s %s" % (p, s) for p in precisions for s in ("mean", "min")]
    parts += ["<h2>Chain token cosine per slice</h2>", table_html(headers, slice_rows)]
    parts += ["<h2>Notes</h2>", "<ul>%s</ul>" % "".join("<li>%s</li>" % escape(n) for n in summary["notes"])]
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>%s</title><style>%s</style></head>\n'
            '<body>\n%s\n</body></html>\n' % (escape("verify: " + title), STYLE, "\n".join(parts)))
