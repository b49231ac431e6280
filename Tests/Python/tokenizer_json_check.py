"""Encodes a text file with a tokenizer.json through the Hugging Face `tokenizers` package.

Usage: tokenizer_json_check.py TOKENIZER.json TEXT_FILE OUT.ids   (OUT.ids: little-endian u32 ids)
"""
import sys

import numpy as np
from tokenizers import Tokenizer

tk = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8", newline="").read()
np.array(tk.encode(text, add_special_tokens=False).ids, dtype="<u4").tofile(sys.argv[3])
