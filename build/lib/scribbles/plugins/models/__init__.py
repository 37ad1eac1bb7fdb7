"""Model techniques, one module per kind of model (each registered in ``core.registry.BUILTIN_TECHNIQUES``).

``baseline`` (mlp, gru), ``sequence`` (cnn1d, gru_attention, transformer_encoder), ``representation``
(autoencoder, vae) and ``classic`` (knn, svm, decision_tree, gaussian_mixture on the sklearn strategy).
"""
