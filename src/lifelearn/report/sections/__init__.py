"""Report sections, one module per study (named after it), each exposing
`section(df, hist, out_dir, config) -> str`; writer.py uses generic for a study without one."""
