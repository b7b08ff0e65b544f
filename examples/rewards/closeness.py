"""Partial credit for numeric answers: 1 when exact, falling linearly to 0 at 100 % relative
error. Not applicable (None) when there is no <answer>; 0 when the answer is not a number."""
import re


def reward(completion, solution, question, **fields):
    m = re.search(r"<answer>(.*?)</answer>", completion, re.S)
    if m is None:
        return None
    try:
        got = float(m.group(1).strip().rstrip("%").replace(",", ""))
        want = float(solution)
    except ValueError:
        return 0.0
    if want == 0:
        return 1.0 if got == 0 else 0.0
    return max(0.0, 1.0 - abs(got - want) / abs(want))
