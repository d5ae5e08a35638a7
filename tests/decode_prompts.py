"""Prompts on which every weight mode is compared with fp32 (tests/test_decode_modes.py, benchmarks/generate.py).

Varied on purpose: English prose and facts, Chinese, code, and chat turns laid out by the
model's chat template (`chat` entries are user messages). Not a test module.
"""

TEXT = [
    "The quick brown fox jumps over the lazy dog because",
    "Once upon a time, in a small village by the sea, there lived",
    "The three primary colours are",
    "Water boils at a temperature of",
    "The theory of evolution by natural selection was proposed by",
    "In 1969, the first humans to walk on the Moon were",
    "A good night's sleep is important because",
    "The largest planet in our solar system is",
    "北京是中国的首都，也是一座历史悠久的城市。",
    "春天来了，公园里的花都开了，",
    "人工智能是",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "import numpy as np\n\n# compute the mean of each row of a matrix\ndef row_means(a):\n",
    "for (int i = 0; i < n; i++) {\n    sum +=",
    "SELECT name, COUNT(*) FROM orders GROUP BY",
    "<!DOCTYPE html>\n<html>\n<head>\n    <title>",
]

CHAT = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain in one sentence what a neural network is.",
    "How many legs does a spider have?",
    "Give me three tips for learning a new language.",
    "请用一句话介绍一下长城。",
    "Write a Python function that reverses a string.",
    "What is 12 times 11?",
]
