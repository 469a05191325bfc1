"""The resource injector: a mutating admission webhook that adds the device requests of the
networks a pod names (network-resources-injector's job), `sriovctl injector`."""
