"""Evaluation: what is measured of a trained run, behind one evaluator interface.

Import the submodules: `evaluators` (the interface: Likelihood, Samples, ClassAccuracy),
`likelihood` (bits/dim on a split), `sampling` (the batched drawer with samples/s and NFE),
`classifier` (the feature classifier and the `Reference` samples are scored against),
`features`, `frechet`, `precision_recall` (FD, k-NN precision/recall), `conditional` (class
and caption accuracy), `reconstruction` (a tokenizer's scores), `modes` (mode coverage),
`nfe` (few-step samplers against a reference), `inception` (Inception FID / KID as papers
compute them, pytorch-fid's network in Flax, from a weight file the user gives), `speed` (the step-time probe, the budget
rule, flop counts), `tables` (the one table writer). (The PF-ODE likelihood the diffusion
paradigms report is `gen_jax.samplers.ode_likelihood`, below them.) Nothing here imports
gen_jax.train or gen_jax.workdir: a `run` is duck-typed (see `evaluators`)."""
