"""InterFaceGAN's ``train_boundary``, transcribed for tests.

Source: https://github.com/genforce/interfacegan, ``utils/manipulator.py`` lines 12-138 (commit
8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb). Changes: the logger calls are dropped and ``np.int`` (removed in
numpy 1.24) is ``int``; everything else, including the global ``np.random.shuffle``, is as published.
"""

import numpy as np
from sklearn import svm


def train_boundary(latent_codes, scores, chosen_num_or_ratio=0.02, split_ratio=0.7, invalid_value=None):
    if (not isinstance(latent_codes, np.ndarray) or not len(latent_codes.shape) == 2):
        raise ValueError("latent_codes")
    num_samples = latent_codes.shape[0]
    latent_space_dim = latent_codes.shape[1]
    if (not isinstance(scores, np.ndarray) or not len(scores.shape) == 2 or
            not scores.shape[0] == num_samples or not scores.shape[1] == 1):
        raise ValueError("scores")
    if chosen_num_or_ratio <= 0:
        raise ValueError("chosen_num_or_ratio")

    if invalid_value is not None:
        latent_codes = latent_codes[scores[:, 0] != invalid_value]
        scores = scores[scores[:, 0] != invalid_value]

    sorted_idx = np.argsort(scores, axis=0)[::-1, 0]
    latent_codes = latent_codes[sorted_idx]
    scores = scores[sorted_idx]
    num_samples = latent_codes.shape[0]
    if 0 < chosen_num_or_ratio <= 1:
        chosen_num = int(num_samples * chosen_num_or_ratio)
    else:
        chosen_num = int(chosen_num_or_ratio)
    chosen_num = min(chosen_num, num_samples // 2)

    train_num = int(chosen_num * split_ratio)
    val_num = chosen_num - train_num
    # Positive samples.
    positive_idx = np.arange(chosen_num)
    np.random.shuffle(positive_idx)
    positive_train = latent_codes[:chosen_num][positive_idx[:train_num]]
    positive_val = latent_codes[:chosen_num][positive_idx[train_num:]]
    # Negative samples.
    negative_idx = np.arange(chosen_num)
    np.random.shuffle(negative_idx)
    negative_train = latent_codes[-chosen_num:][negative_idx[:train_num]]
    negative_val = latent_codes[-chosen_num:][negative_idx[train_num:]]
    # Training set.
    train_data = np.concatenate([positive_train, negative_train], axis=0)
    train_label = np.concatenate([np.ones(train_num, dtype=int), np.zeros(train_num, dtype=int)], axis=0)
    val_data = np.concatenate([positive_val, negative_val], axis=0)
    val_label = np.concatenate([np.ones(val_num, dtype=int), np.zeros(val_num, dtype=int)], axis=0)

    clf = svm.SVC(kernel='linear')
    classifier = clf.fit(train_data, train_label)
    val_accuracy = None
    if val_num:
        val_prediction = classifier.predict(val_data)
        val_accuracy = np.sum(val_label == val_prediction) / (val_num * 2)

    a = classifier.coef_.reshape(1, latent_space_dim).astype(np.float32)
    return a / np.linalg.norm(a), val_accuracy
