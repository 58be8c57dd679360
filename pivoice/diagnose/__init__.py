"""Commands for the person setting pivoice up: what the machine has and how it sounds (`pivoice devices`,
`pivoice test-mic`), without an API key."""
