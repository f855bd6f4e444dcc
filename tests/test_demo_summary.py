"""`saelab demo` ends with the workspace's headline numbers, each beside its reference point: the same lines as
the report's summary.md, and a sentence where a number is at its reference."""

from __future__ import annotations

from .report.workspace import add_evals, make_workspace


def test_the_demo_prints_each_number_beside_its_reference_as_the_report_writes_it(tmp_path):
    from saelab.demo import STAGES, stage_summary
    from saelab.report import ReportConfig, run

    ws = make_workspace(tmp_path / "ws")
    add_evals(ws, narrow_fvu=0.41, pca_fvu=0.40)  # no better than PCA with as many directions
    run(ReportConfig(max_latent_pages=1), ws)
    lines: list[str] = []
    stage_summary(ws, lines.append)
    assert STAGES[-1] == "summary" and lines[-1] == f"written: {ws.report / 'summary.md'}"
    bullets = [b[2:] for b in (ws.report / "summary.md").read_text(encoding="utf-8").splitlines()
               if b.startswith("- ")]
    assert lines[:-1] == bullets
    fvu = next(line for line in lines if line.startswith("FVU of narrow"))
    assert "0.400 for PCA with 4 directions" in fvu and "At its reference" in fvu
    sfal = next(line for line in lines if line.startswith("SFAL of narrow"))
    assert "vs 0.300" in sfal and "At its reference" not in sfal  # 0.41 is far above shuffled's 0.30 ± 0.01
