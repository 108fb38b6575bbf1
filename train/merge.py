"""`python -m train.merge`: merge the trained pieces into a full-precision graft and save it (train.publishing.merge)."""

from train.publishing.merge import main

if __name__ == "__main__":
    main()
