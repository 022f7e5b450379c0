"""Speed routes for the reference model of :mod:`segany.modeling` (attention, upscaling, the
shared-image decoder, packed bf16 linear layers, precisions), chosen per device in
:mod:`segany.fast.routes` and installed by :func:`segany.fast.model.install_fast_routes`."""
