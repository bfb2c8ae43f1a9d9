"""Data: IQA datasets with MOS, image folders for pretraining, transforms, synthetic distortions,
splits and label files."""
