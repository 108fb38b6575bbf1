"""`python -m train.stage1_align`: stage 1: the projector alone (train.stages.stage1_align)."""

from train.stages.stage1_align import main

if __name__ == "__main__":
    main()
