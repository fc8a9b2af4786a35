//! End-to-end tests that start real `rota` processes; they live under `tests/tests/`.
