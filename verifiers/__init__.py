"""Pure scoring of completions: math, multiple choice, code, format. No torch, no model."""
