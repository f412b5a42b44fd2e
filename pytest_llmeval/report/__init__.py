"""Reports: the typed run report (envelope), its JSON schema, writers, summaries, HTML extras,
run metadata and the progress line. Controller side; imports neither pytest nor torch.
"""
