"""The operator dashboard: a Streamlit app on :8020 that reads through `mad.query` only and
acts through `mad.detect.operator` only (feedback, snoozes, maintenance windows)."""
