package handler

// DirectSends is how many requests the llm_gate transport has sent with
// their body in memory.
func DirectSends() int64 { return directSends.Load() }
