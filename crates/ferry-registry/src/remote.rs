pub struct RemoteRegistry;
