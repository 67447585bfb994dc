"""Reports: terminal tables now; HTML pages and figures consume the same results."""
