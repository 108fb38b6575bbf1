"""`python -m train.card`: write the Hub model card (train.publishing.card)."""

from train.publishing.card import main

if __name__ == "__main__":
    main()
