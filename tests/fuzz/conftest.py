"""Print the fuzz campaign's tally (calls per outcome, entry points) at the end of a run that used it."""
from hypothesis import Phase, settings

from tests.fuzz.harness import COUNTS
from tests.fuzz.signatures import OUTCOMES

# `--hypothesis-profile=fuzz-triage`: report failures without shrinking them (a quick survey of what breaks)
settings.register_profile("fuzz-triage", phases=[Phase.explicit, Phase.generate])


CAMPAIGNS = {"hypothesis": "", "signature": "signature:", "cli": "cli:"}


def tally():
    """{campaign: (calls, entry points, {outcome: calls})} of what ran in this session."""
    out = {}
    for campaign, prefix in CAMPAIGNS.items():
        mine = {(entry, outcome): n for (entry, outcome), n in COUNTS.items()
                if (entry.startswith(prefix) if prefix else ":" not in entry)}
        if mine:
            totals = {outcome: sum(n for (_, o), n in mine.items() if o == outcome) for outcome in OUTCOMES}
            out[campaign] = (sum(totals.values()), len({entry for entry, _ in mine}), totals)
    return out


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    terminalreporter.write_sep("-", "fuzz campaigns")
    for campaign, (calls, entries, totals) in tally().items():
        terminalreporter.write_line(f"{campaign}: {calls} calls over {entries} entry points: "
                                    + ", ".join(f"{n} {o}" for o, n in totals.items()))
