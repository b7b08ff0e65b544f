"""A reward that varies on a random policy's text (for the trainer's tests, where the tiny
random policy never answers correctly): a number in [0, 1] from the completion's length and
letters, so that groups have variance and GRPO has something to learn from."""


def reward(completion, solution, question, **fields):
    letters = sum(c.isalpha() for c in completion)
    return (len(completion) % 7) / 6.0 * 0.5 + (letters % 5) / 4.0 * 0.5
