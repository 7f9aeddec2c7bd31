"""What the data is: the canonical tables, their schemas, the segments, repayment facts."""
