"""Running on Ray (the optional extra `transfer-audit[ray]`): many audits as Ray tasks (ray_sweep), one audit's
inference over Parquet folders as Ray Data map_batches with mergeable sufficient statistics (ray_scan). Ray is
imported only inside these modules' functions."""
