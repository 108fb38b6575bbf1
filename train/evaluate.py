"""`python -m train.evaluate`: transcribe a test set and score it (train.evaluation.evaluate)."""

from train.evaluation.evaluate import main

if __name__ == "__main__":
    main()
