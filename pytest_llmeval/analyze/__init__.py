"""Analysis: the typed item record, per task x model aggregation, statistics and gates.

Pure functions over records: no pytest, no torch, so saved reports can be re-analysed alone.
"""
