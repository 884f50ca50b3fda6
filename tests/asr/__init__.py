"""ASR pipeline tests (a package, so test modules can share helpers by relative import)."""
