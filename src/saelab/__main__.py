"""`python -m saelab …`, the same as the `saelab` command; what `torchrun --nproc_per_node N -m saelab …` runs."""

from saelab.cli import main

if __name__ == "__main__":
    main()
