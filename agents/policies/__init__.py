"""The policies: the GPT actor-critic policy (`gpt_policy`, its forward passes in `gpt_forward`),
the features extractors and the reference-prior policy (`extractors`), and the adapters that make
any SB3 policy TextGen's KL scorer (`scorer`)."""
