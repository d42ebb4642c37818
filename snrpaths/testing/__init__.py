"""Test helpers shipped with snrpaths: hypothesis strategies for token tables, toy joints and SNR states."""
