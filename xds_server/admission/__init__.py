"""Who may open an ADS stream: authentication (mTLS, bearer tokens) and stream limits
(per node, in total, new streams per second)."""
