"""The ETDG and its analyses (nested parallelism, wavefronts, reuse). Built in issue 4;
nothing here yet, so nothing imports it."""
