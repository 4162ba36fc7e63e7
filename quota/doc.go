// Package quota meters tokens and requests per user and decides, before a
// request is forwarded, whether it may run and how much it may generate.
//
// It is pure and in-memory: no HTTP, no storage. The clock is injected
// (Options.Now) and persisted state is obtained through Options.Load and
// handed back through Engine.Dirty as opaque, versioned bytes, so that the
// store package can keep counters without knowing the rules.
//
// # Windows
//
// Usage is tracked for every user in six windows, whether or not a limit is
// set on them, so that a limit added later applies to usage already made:
//
//   - Minute: a sliding window of 60 one-second buckets.
//   - Hour, Day: calendar-aligned in UTC.
//   - Week: starts Monday 00:00 UTC.
//   - Month: starts on the 1st, 00:00 UTC.
//   - Total: never resets.
//
// A calendar period that has rolled over starts at zero. If the clock goes
// back, nothing is zeroed or un-aged: the stored (later) periods and the
// latest minute second seen stay current until the clock catches up. If it
// goes back further than that (it had jumped ahead and was set right), the
// user would be held to the future's usage for as long as the jump: usage
// counted in a period more than one period ahead then counts in the
// current period, and a minute window more than a minute ahead starts over. Limits (tokens and
// requests per window, and the number of requests in flight) are passed with
// every call, so a change of plan applies to the next request. A limit of 0
// (or less) means no limit.
//
// # Admission
//
// Engine.Admit reserves the request's worst case, prompt + outputCap ×
// choices, against every token window at once, under the user's lock, so
// concurrent requests of one user can never together spend more than the
// limits allow. A window admits the request when
//
//	used(current period) + reserved + need <= limit
//
// where reserved is the sum of all reservations the user holds (they are not
// tied to a period: a reservation made before midnight still holds after).
//
// Whenever the request could generate more than fits — no client cap, or a
// client cap larger than what remains — the engine clamps the per-choice output:
//
//	cap = min(clientCap or DefaultOutput, floor((minRemaining − prompt) / choices))
//
// where minRemaining is the smallest limit − used − reserved over the limited
// token windows, and Reservation.Clamped tells the caller to set cap as the
// upstream's max_tokens. If cap < 1 (not even the prompt and one token per
// choice fit) the request is denied. A request with no client cap is always
// clamped when the user has a token limit: no request can pin the whole
// remaining budget, and none can generate past it.
//
// # The bound
//
// For a token window with limit L, constant during the period, and provided
// every settled completion is at most the reservation's cap × choices (the
// upstream honours max_tokens; prompt-only requests complete 0 tokens):
//
//	used(period) <= L + Σ max(0, actualPrompt_i − estimatedPrompt_i)
//
// summed over the requests i settled in that period (for Minute: in the last
// 60 seconds). Proof sketch: let D = used + reserved. Admission keeps D <= L
// after adding the reservation; a period rollover or a minute bucket ageing out
// only lowers D (reserved alone is <= L, since it was when last admitted and
// only shrinks between admissions); settling request i replaces its
// reservation (estimatedPrompt + cap × choices) by actualPrompt + completion,
// raising D by at most max(0, actualPrompt − estimatedPrompt). Note the sum is
// of positive parts: a prompt over-estimate frees room that a later request may
// use, so errors do not cancel out. The bound does not hold if the caller
// settles more completion tokens than the cap, or if the limit is lowered while
// reservations made under the old limit are in flight.
//
// # Denials
//
// A refusal is a *Denial; it consumes nothing. Kinds:
//
//   - Budget: a token window other than Minute is used up (OpenAI's
//     insufficient_quota). RetryAfter is the time to the window's reset.
//   - TokenRate: the Minute token window is full; RetryAfter is the time until
//     enough of its buckets age out (at least 1s). Also used, with RetryAfter
//     1s, when a longer window is not used up but the room left is held by the
//     user's requests in flight: retrying soon can succeed, so it is not a
//     budget error.
//   - RequestRate: a request window is full (RetryAfter as for tokens).
//   - Parallel: MaxParallel requests are in flight; RetryAfter 1s.
//
// RetryAfter 0 means retrying will not help: the Total window is used up, or
// the request alone is larger than a limit. When several constraints block a
// request, the Denial names the one that keeps it out longest.
//
// Request windows count a request when it is admitted; Cancel does not refund
// it, since a request was made. Tokens are charged at Settle, to the periods
// current at settle time and to the minute bucket of that second.
//
// # Concurrency and memory
//
// Users are spread over 64 shards, each a map and a mutex; per-user state is a
// fixed-size struct (about 1.2 KiB), and Admit allocates only the returned
// *Reservation.
package quota
