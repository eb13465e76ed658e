"""Scores: reference image sets, Inception weights, FID/KID, PSNR/SSIM scoring, and the schedule sweep."""
