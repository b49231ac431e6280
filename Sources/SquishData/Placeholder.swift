// SquishData
