"""Print the fuzz campaign's tally (calls per outcome, entry points) at the end of a run that used it."""
from hypothesis import Phase, settings

from tests.fuzz.harness import COUNTS, OUTCOMES

# `--hypothesis-profile=fuzz-triage`: report failures without shrinking them (a quick survey of what breaks)
settings.register_profile("fuzz-triage", phases=[Phase.explicit, Phase.generate])


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    entries = {entry for entry, _ in COUNTS}
    totals = {outcome: sum(n for (_, o), n in COUNTS.items() if o == outcome) for outcome in OUTCOMES}
    terminalreporter.write_sep("-", "fuzz campaign")
    terminalreporter.write_line(f"{sum(totals.values())} calls over {len(entries)} entry points: "
                                + ", ".join(f"{n} {o}" for o, n in totals.items()))
