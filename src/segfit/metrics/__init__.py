"""Model-independent metrics: mask IoU, the interactive-segmentation click protocol (mIoU@k, NoC@IoU) and video
object segmentation (J, F, J&F as DAVIS 2017)."""
