"""`python -m train.push`: upload a graft folder to the Hub with its code (train.publishing.push)."""

from train.publishing.push import main

if __name__ == "__main__":
    main()
