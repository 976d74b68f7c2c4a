"""The search, apart from Ray and Optuna: the search block (spec), a search folder read back
(folder), the cross-trial consensus proxy (consensus), export and the proxy report. Running a
search is regda_dist.distributed.search."""
