"""Query-by-example search of spoken terms: subsequence DTW, its ground truth (NIST STD / QUESST layout) and TWV."""
