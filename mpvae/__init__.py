"""MPVAE, the Multi Path VAE: several latents tapped at different depths of one conv encoder, merged by one decoder

Modules:

- `mpvae.params`: One declaration of every parameter of the table notebooks (its type, range, default and help), the rules that tie parameters together, and the presets: named sets of overrides of that declaration.
- `mpvae.reports`: What a table run shows and writes: the Markdown tables beside the paper's, the claim's verdict, the probe's protocol, sweeps and summaries, and the figures (reconstructions, traversals per path, ours against the paper).
- `mpvae.runner`: The table notebooks run as papermill jobs: one job per table, seed and beta, each in its own folder, with threads shared out, progress followed on the terminal, failures named by cell, and sweeps summarised.
- `mpvae.stages`: The steps every table notebook runs, as library functions: train (or load) the models, encode, probe, turn the probes into the table's rows, and write the results.
- `mpvae.stats`: The paper's numbers (its Tables 1 and 2) and the statistics every table is made of: aggregates over probe runs and representation seeds, the ordering check, the paired t test over seeds, and jobs combined into one table. Pure: no I/O, no model."""

__version__ = "0.1.0"
