"""`python -m train.stage2_qlora`: stage 2: LoRA and the projector (train.stages.stage2_qlora)."""

from train.stages.stage2_qlora import main

if __name__ == "__main__":
    main()
