"""Model-independent metrics: mask IoU and the interactive-segmentation click protocol (mIoU@k, NoC@IoU)."""
