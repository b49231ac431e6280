// SquishFormats
