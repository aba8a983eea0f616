"""What the CLI and the console show of workflows and runs: pictures, run trees, JSON reports."""
