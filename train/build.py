"""`python -m train.build`: compose an audio graft and save it as a complete remote-code model folder (train.building.build)."""

from train.building.build import main

if __name__ == "__main__":
    main()
