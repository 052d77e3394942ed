"""One palette in real Chromium: a pruned trial is painted in the same colour on Part II's live view and on
Results (its per-epoch line on both, its timeline bar on Results), the palette's colour for pruned trials."""

from __future__ import annotations

import pytest

from benchmarks.results_render import build_study, synthetic_trials
from fetal_core.figures import STATE_COLOURS
from tests.conftest import new_page, wait_until
from tests.test_browser_part2 import choose, open_part2

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

# The colour Chromium paints each trace of the Plotly chart inside ``container`` in: [name, stroke of its line
# (scatter) or fill of its first bar (bar)], read from the drawn SVG, not from the figure's data.
PAINTED = """(container) => {
  const plot = document.querySelector(`${container} .js-plotly-plot`);
  if (!plot || !plot.data) return [];
  const layers = plot.querySelectorAll('.scatterlayer .trace, .barlayer .trace');
  return Array.from(layers).map((layer, i) => {
    const line = layer.querySelector('path.js-line');
    const bar = layer.querySelector('.point path');
    const style = line ? line.style.stroke : bar ? bar.style.fill : '';
    return [plot.data[i] ? plot.data[i].name : '', style];
  });
}"""


def rgb(hex_colour: str) -> str:
    """'#ff7f0e' as the browser writes it: 'rgb(255, 127, 14)'."""
    return "rgb({}, {}, {})".format(*(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)))


def painted(page, container: str, name: str) -> str:
    """The colour the trace called ``name`` is painted in, once the chart is drawn."""
    return wait_until(lambda: dict(page.evaluate(PAINTED, container)).get(name), f"trace {name!r} in {container}")


@pytest.fixture
def study_with_a_pruned_trial(tmp_path, request):
    """A study whose trials 3 and 6 were pruned, in the storage before the server starts."""
    trials = synthetic_trials(8, seed=1)
    assert [i for i, t in enumerate(trials) if t.state.name == "PRUNED"] == [3, 6]  # numbered in this order
    build_study(f"sqlite:///{tmp_path}/app.sqlite3", "colours", trials)
    return request.getfixturevalue("streamlit_server")


def test_a_pruned_trial_has_one_colour_on_part2_and_on_results(study_with_a_pruned_trial, chromium, artifacts):
    server, pruned = study_with_a_pruned_trial, rgb(STATE_COLOURS["PRUNED"])
    page = new_page(chromium, viewport={"width": 1400, "height": 2000})
    try:
        open_part2(page, server.url)
        choose(page, "p2_choice", "colours")  # watch the study live
        on_part2 = painted(page, ".st-key-p2_curves", "trial 3 (pruned)")
        complete_part2 = painted(page, ".st-key-p2_curves", "trial 0 (complete)")
        page.screenshot(path=str(artifacts / "palette_part2.png"), full_page=True)

        page.goto(f"{server.url}/results")
        page.get_by_role("heading", name="Timeline").wait_for()
        on_results = painted(page, ".st-key-plot_intermediate", "trial 3 (pruned)")
        complete_results = painted(page, ".st-key-plot_intermediate", "trial 0 (complete)")
        bar = painted(page, ".st-key-plot_timeline", "PRUNED")
        page.screenshot(path=str(artifacts / "palette_results.png"), full_page=True)
    finally:
        page.close()
    assert on_part2 == on_results == bar == pruned, (on_part2, on_results, bar, pruned)
    assert complete_part2 == complete_results == rgb(STATE_COLOURS["COMPLETE"]) != pruned
