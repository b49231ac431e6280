// SquishTokenizer
