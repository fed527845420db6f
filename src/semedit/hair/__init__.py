"""Hairstyle transfer between face images (Šubrtová, Čech, Franc, FG 2021): encoders, training, inference."""
