// The embeddable API is one import: the types requests and results are made of (ChatMessage, SamplerSettings,
// TokenLogprobs, JSONSchemaGrammar, LanguageModel) come with it.
@_exported import SquishModel
@_exported import SquishTokenizer
